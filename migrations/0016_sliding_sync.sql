-- Simplified sliding sync (MSC4186) orders a user's rooms by their latest event of a
-- "bumping" type (Synapse's DEFAULT_BUMP_EVENT_TYPES). This partial index makes that
-- one backwards index probe per room, whatever the reactions, edits and state after it.
CREATE INDEX events_room_bump ON events (room_id, stream_ordering)
    WHERE type IN ('m.room.create', 'm.room.message', 'm.room.encrypted', 'm.sticker',
                   'm.call.invite', 'org.matrix.msc3381.poll.start', 'm.poll.start', 'm.beacon_info')
      AND NOT outlier AND rejected_reason IS NULL;
