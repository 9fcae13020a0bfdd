-- Settings of the deployment itself, shared by every instance: the JWT signing secret when
-- JWT_SECRET is not set (generated once by the first instance that starts on PostgreSQL).
CREATE TABLE server_settings (
  name        text PRIMARY KEY,
  value       text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
