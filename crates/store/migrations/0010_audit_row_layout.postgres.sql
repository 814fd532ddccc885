-- PostgreSQL part: nothing more; a BIGINT key is the table's own B-tree.
SELECT 1;
