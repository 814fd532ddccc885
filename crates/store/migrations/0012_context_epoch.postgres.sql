-- PostgreSQL part: nothing. A decision's context is one round trip to the
-- server whether or not part of it was read before, so every read is whole.
SELECT 1;
