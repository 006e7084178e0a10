-- Accounts an operator disabled (`chat-server admin disable`): a login with
-- the right password gets 403 account_disabled, and every node ends the
-- user's sessions and connections. NULL while the account is enabled.
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMPTZ;

-- Nodes poll the disabled accounts every second: the partial index holds
-- those only, so the poll costs the same however many accounts there are.
CREATE INDEX users_disabled ON users (id) WHERE disabled_at IS NOT NULL;
