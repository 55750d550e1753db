-- GET /notifications pages through a user's notifications of every room, newest first.
CREATE INDEX event_push_actions_user_stream ON event_push_actions (user_id, stream_ordering);
