-- Auth hardening (issue 9): password changes and resets revoke a user's sessions, and listed
-- key prefixes reveal less.

-- Revoking every refresh token of a user finds them by index.
CREATE INDEX refresh_tokens_user ON refresh_tokens (tenant_id, user_id) WHERE revoked_at IS NULL;

-- Prefixes were the first 12 characters of a key. They now keep at most 8 and always less than
-- a quarter of the key. Every stored key was generated (`fsk_` + 40 characters: 8 is fine)
-- except possibly the bootstrap admin's first key, which an operator may have chosen as short
-- as 16 characters: it keeps 3, under a quarter of any key ever accepted.
UPDATE api_keys SET prefix = left(prefix, 3)
 WHERE id = (SELECT k.id FROM api_keys k
               JOIN users u ON u.id = k.user_id
               JOIN tenants t ON t.id = u.tenant_id
              WHERE t.slug = 'default' AND u.agent_code = 'admin'
              ORDER BY k.created_at, k.id LIMIT 1);
UPDATE api_keys SET prefix = left(prefix, 8) WHERE length(prefix) > 8;
