-- Revocation events are stamped with the database's clock, not the writing replica's:
-- replicas poll "events since T" with T also read from the database, so clock skew
-- between replicas can no longer hide an event behind a poller's cursor.
CREATE FUNCTION revocation_events_store_clock() RETURNS trigger AS $$
BEGIN
    NEW.at := CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp())) AS BIGINT);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER revocation_events_store_clock
    BEFORE INSERT ON revocation_events
    FOR EACH ROW EXECUTE FUNCTION revocation_events_store_clock();
