-- A counter of the changes of each room's current state: every write of current_state
-- moves it in the same transaction (homeserver/storage/state.py). With other processes
-- on the database, a message is written on the room's tip as this process last knew it,
-- forked from events written meanwhile elsewhere, if and only if the room's state epoch
-- is still the one of that tip: the state the message was checked against is still the
-- room's (storage/events.py insert_on_tip; docs/scaling.md).
ALTER TABLE rooms ADD COLUMN state_epoch BIGINT NOT NULL DEFAULT 0;
