-- Stream positions come from PostgreSQL sequences, so that several server
-- processes sharing this database hand out positions from one counter
-- (homeserver/storage/streams.py). Each starts after the highest position in use.
CREATE SEQUENCE events_stream_seq MINVALUE 0 START 1;
SELECT setval('events_stream_seq', GREATEST(0, (SELECT COALESCE(max(stream_ordering), 0) FROM events)));
CREATE SEQUENCE account_data_stream_seq MINVALUE 0 START 1;
SELECT setval('account_data_stream_seq', (SELECT COALESCE(max(stream_id), 0) FROM account_data));
CREATE SEQUENCE to_device_stream_seq MINVALUE 0 START 1;
SELECT setval('to_device_stream_seq', GREATEST(
    (SELECT COALESCE(max(stream_id), 0) FROM to_device_messages),
    (SELECT COALESCE(max(stream_id), 0) FROM to_device_txns)));
CREATE SEQUENCE device_lists_stream_seq MINVALUE 0 START 1;
SELECT setval('device_lists_stream_seq', (SELECT COALESCE(max(stream_id), 0) FROM device_lists_stream));
CREATE SEQUENCE receipts_stream_seq MINVALUE 0 START 1;
SELECT setval('receipts_stream_seq', (SELECT COALESCE(max(stream_id), 0) FROM receipts));
CREATE SEQUENCE presence_stream_seq MINVALUE 0 START 1;
SELECT setval('presence_stream_seq', (SELECT COALESCE(max(stream_id), 0) FROM presence));
-- Typing is kept in memory, but its positions are shared so that a sync token
-- means the same on every process.
CREATE SEQUENCE typing_stream_seq MINVALUE 0 START 1;
SELECT setval('typing_stream_seq', 0);
-- Outliers and backfilled events are written below every live position, counting down.
CREATE SEQUENCE events_outlier_seq INCREMENT BY -1 MAXVALUE -1 MINVALUE -9223372036854775808 START -1;
SELECT setval('events_outlier_seq', LEAST(0, (SELECT COALESCE(min(stream_ordering), 0) FROM events)) - 1, false);
