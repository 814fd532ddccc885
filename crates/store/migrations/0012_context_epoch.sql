-- Decision speed (issue 4), portable part: nothing; see the dialect parts.
SELECT 1;
