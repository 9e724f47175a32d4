-- Revocation events are stamped with the database's clock, not the writing process's:
-- pollers read "events since T" with T also from the database, so clock skew between
-- processes can no longer hide an event behind a poller's cursor.
CREATE TRIGGER revocation_events_store_clock
AFTER INSERT ON revocation_events
BEGIN
    UPDATE revocation_events SET at = CAST(strftime('%s', 'now') AS INTEGER) WHERE id = NEW.id;
END;
