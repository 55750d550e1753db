"""The admin API's services, built from the server's (wired once, by homeserver/admin/)."""

from __future__ import annotations

import dataclasses

from homeserver.services.admin_federation import AdminFederationService
from homeserver.services.admin_purge_history import HistoryPurger
from homeserver.services.admin_registration_tokens import RegistrationTokenAdmin
from homeserver.services.admin_room_delete import RoomDeleter
from homeserver.services.admin_rooms import AdminRoomService
from homeserver.services.admin_server_notices import ServerNotices
from homeserver.services.admin_users import AdminUserService
from homeserver.services.container import Services
from homeserver.services.room_tags import RoomTags
from homeserver.storage.admin_federation import AdminFederationStore
from homeserver.storage.admin_purge import AdminPurgeStore
from homeserver.storage.admin_registration_tokens import AdminRegistrationTokenStore
from homeserver.storage.admin_rooms import AdminRoomStore
from homeserver.storage.admin_users import AdminUserStore
from homeserver.storage.federation_queue import FederationQueueStore
from homeserver.storage.purge import PurgeStore
from homeserver.storage.retention import RetentionStore


@dataclasses.dataclass
class AdminServices:
    users: AdminUserService
    rooms: AdminRoomService
    room_deleter: RoomDeleter
    history_purger: HistoryPurger
    registration_tokens: RegistrationTokenAdmin
    server_notices: ServerNotices
    federation: AdminFederationService


def build_admin_services(svc: Services) -> AdminServices:
    room_store = AdminRoomStore(svc.db)
    user_store = AdminUserStore(svc.db)
    rooms = AdminRoomService(svc.server_name, room_store, svc.state, svc.events, svc.views, svc.membership,
                             svc.users, svc.pipeline)
    # Blocked rooms refuse joins and invites of local users (membership.py asks this).
    svc.membership.room_blocked = rooms.is_blocked
    return AdminServices(
        users=AdminUserService(
            svc.server_name, user_store, svc.users, svc.accounts, svc.profiles, svc.deactivation,
            svc.user_admin, svc.state, svc.pushers,
        ),
        rooms=rooms,
        room_deleter=RoomDeleter(
            svc.server_name, room_store, PurgeStore(svc.db), svc.rooms, svc.state, svc.events, svc.membership,
            svc.pipeline,
        ),
        history_purger=HistoryPurger(
            svc.server_name, AdminPurgeStore(svc.db), RetentionStore(svc.db), svc.rooms, svc.events, svc.pipeline,
        ),
        registration_tokens=RegistrationTokenAdmin(AdminRegistrationTokenStore(svc.db), svc.registration),
        server_notices=ServerNotices(
            svc.config.server_notices, svc.server_name, svc.users, user_store, svc.state, svc.room_creator,
            svc.pipeline, RoomTags(svc.account_data),
        ),
        federation=AdminFederationService(AdminFederationStore(svc.db), FederationQueueStore(svc.db)),
    )
