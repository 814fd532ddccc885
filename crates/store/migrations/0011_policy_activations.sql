-- Evidence packs list every policy activation, found by kind among the
-- whole log: a full scan per pack at a million entries. Only activations
-- are indexed, so appends of other kinds do not pay for it.
CREATE INDEX audit_log_policy_activations ON audit_log (idx)
    WHERE kind = 'policy.activated';
