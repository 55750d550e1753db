"""A photo travels through the real server process: matrix-nio uploads it, sends it
in a room, and another user's nio fetches its thumbnail and the full file."""

from __future__ import annotations

import io

from nio import (
    DownloadResponse, JoinResponse, RoomCreateResponse, RoomSendResponse, SyncResponse,
    ThumbnailResponse, UploadResponse,
)
from nio.api import ResizingMethod
from PIL import Image

from tests.e2e.nio_users import registered_client



def _photo() -> bytes:
    image = Image.linear_gradient("L").resize((1600, 1200)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


async def test_photo_upload_thumbnail_and_download_with_nio(server):
    alice = await registered_client(server.base_url, "alice")
    bob = await registered_client(server.base_url, "bob")
    photo = _photo()
    try:
        uploaded, _ = await alice.upload(
            io.BytesIO(photo), content_type="image/jpeg", filename="garden.jpg", filesize=len(photo)
        )
        assert isinstance(uploaded, UploadResponse), uploaded
        mxc = uploaded.content_uri
        assert mxc.startswith("mxc://e2e.local/")

        created = await alice.room_create(name="Photos", invite=[bob.user_id])
        assert isinstance(created, RoomCreateResponse), created
        assert isinstance(await bob.join(created.room_id), JoinResponse)
        sent = await alice.room_send(created.room_id, "m.room.message", {
            "msgtype": "m.image", "body": "garden.jpg", "url": mxc,
            "info": {"mimetype": "image/jpeg", "size": len(photo), "w": 1600, "h": 1200},
        })
        assert isinstance(sent, RoomSendResponse), sent

        synced = await bob.sync(timeout=0)
        assert isinstance(synced, SyncResponse)
        [image_event] = [
            e for e in synced.rooms.join[created.room_id].timeline.events if getattr(e, "url", None)
        ]
        server_name, media_id = image_event.url.removeprefix("mxc://").split("/")

        thumb = await bob.thumbnail(server_name, media_id, 320, 240, method=ResizingMethod.scale)
        assert isinstance(thumb, ThumbnailResponse), thumb
        assert thumb.content_type == "image/jpeg"
        assert Image.open(io.BytesIO(thumb.body)).size == (320, 240)

        full = await bob.download(mxc=image_event.url)
        assert isinstance(full, DownloadResponse), full
        assert full.body == photo
        assert full.content_type == "image/jpeg"
        assert full.filename == "garden.jpg"
    finally:
        await alice.close()
        await bob.close()
