"""Explicit wiring of stores and services (STYLE.md habit 5): built once, handed to routes."""

from __future__ import annotations

import dataclasses
from typing import Any

from homeserver.config import Config
from homeserver.protocol.events import Event
from homeserver.services.account_data import AccountDataService
from homeserver.services.accounts import AccountService
from homeserver.services.auth import PasswordHasher, TokenAuthenticator
from homeserver.services.e2e_keys import E2eKeyService
from homeserver.services.key_backup import KeyBackupService
from homeserver.services.deactivation import DeactivationService
from homeserver.services.erasure import ErasureService
from homeserver.services.retention import RetentionJob
from homeserver.storage.retention import RetentionStore
from homeserver.services.aggregations import Aggregator
from homeserver.services.event_views import EventViews
from homeserver.services.ignored_users import IgnoredUsers
from homeserver.services.membership import MembershipService
from homeserver.services.notifications import NotificationCounter
from homeserver.services.notifier import Notifier
from homeserver.services.pipeline import EventPipeline
from homeserver.services.presence import PresenceService
from homeserver.services.profiles import ProfileService
from homeserver.services.push_rules import PushRulesService
from homeserver.services.pushers import PushersService
from homeserver.services.ratelimit import RateLimiter
from homeserver.services.receipts import ReceiptsService
from homeserver.services.refresh_tokens import LoginTokenService, RefreshService
from homeserver.services.relation_checks import RelationChecks
from homeserver.services.relations import RelationsService
from homeserver.services.room_creation import RoomCreator
from homeserver.services.room_directory import RoomDirectoryService
from homeserver.services.room_events import RoomEventsService
from homeserver.services.notification_list import NotificationList
from homeserver.services.room_summary import RoomSummaryService
from homeserver.services.room_upgrade import RoomUpgrader
from homeserver.services.search import SearchService
from homeserver.services.sliding_sync import SlidingSyncService
from homeserver.services.sync import SyncService
from homeserver.services.to_device import ToDeviceService
from homeserver.services.turn import TurnService
from homeserver.services.typing import TypingService
from homeserver.services.uia import UserInteractiveAuth
from homeserver.services.user_admin import UserAdminService
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.db import Database
from homeserver.storage.devices import DeviceStore
from homeserver.storage.e2e_keys import E2eKeyStore
from homeserver.storage.event_graph import EventGraphStore
from homeserver.storage.key_backup import KeyBackupStore
from homeserver.storage.events import EventStore
from homeserver.storage.filters import FilterStore
from homeserver.storage.media import MediaStore
from homeserver.storage.notification_list import NotificationListStore
from homeserver.storage.presence import PresenceStore
from homeserver.storage.push_actions import PushActionStore
from homeserver.storage.push_rules import PushRuleStore
from homeserver.storage.pushers import PusherStore
from homeserver.storage.receipts import ReceiptStore
from homeserver.storage.refresh_tokens import LoginTokenStore, RefreshTokenStore
from homeserver.storage.registration import RegistrationStore
from homeserver.storage.relations import RelationStore
from homeserver.storage.rooms import RoomStore
from homeserver.storage.search import SearchStore
from homeserver.storage.state import StateStore
from homeserver.storage.streams import OutlierPositions, StreamChangeCache, StreamIdGenerator
from homeserver.storage.stream_positions import OUTLIER_SEQUENCE, SEQUENCES
from homeserver.services.cluster import Cluster, instance_id_of
from homeserver.services.cluster_hooks import wire_cluster
from homeserver.storage.to_device import ToDeviceStore
from homeserver.storage.user_directory import UserDirectoryStore
from homeserver.storage.users import UserStore
# Services that route modules used to build from stores themselves (issue 7 part 4).
from homeserver.services.filters import FilterService
from homeserver.services.hierarchy import HierarchyService
from homeserver.services.openid import OpenIdService
from homeserver.services.reports import ReportService
from homeserver.services.room_aliases import RoomAliasService
from homeserver.services.user_directory import UserDirectoryService
from homeserver.storage.hierarchy import HierarchyStore
from homeserver.storage.openid import OpenIdStore
from homeserver.storage.reports import ReportStore


@dataclasses.dataclass
class Services:
    config: Config
    # db and the stores (users to registration, user_directory) are here for wiring: services,
    # federation/ and media/ build on them. Route modules call services only (tests/test_layers.py).
    db: Database
    signing_key: Any
    users: UserStore
    devices: DeviceStore
    events: EventStore
    state: StateStore
    rooms: RoomStore
    filters: FilterStore
    media: MediaStore
    registration: RegistrationStore
    notifier: Notifier
    tokens: TokenAuthenticator
    accounts: AccountService
    uia: UserInteractiveAuth
    refresh_tokens: RefreshService
    login_tokens: LoginTokenService
    user_admin: UserAdminService
    pipeline: EventPipeline
    membership: MembershipService
    room_creator: RoomCreator
    room_events: RoomEventsService
    views: EventViews
    sync: SyncService
    # The unread counts of /sync, sliding sync and the notification list (one, so that
    # each waits for the others' recordings).
    notifications: NotificationCounter
    sliding_sync: SlidingSyncService
    account_data: AccountDataService
    receipts: ReceiptsService
    typing: TypingService
    profiles: ProfileService
    user_directory: UserDirectoryStore
    deactivation: DeactivationService
    login_limiter: RateLimiter
    registration_limiter: RateLimiter
    push_rules: PushRulesService
    pushers: PushersService
    room_directory: RoomDirectoryService
    e2e_keys: E2eKeyService
    to_device: ToDeviceService
    key_backup: KeyBackupService
    turn: TurnService
    presence: PresenceService
    relations: RelationsService
    room_upgrader: RoomUpgrader
    room_summary: RoomSummaryService
    notification_list: NotificationList
    search: SearchService
    erasure: ErasureService
    retention: RetentionJob
    room_aliases: RoomAliasService
    sync_filters: FilterService
    user_search: UserDirectoryService
    reports: ReportService
    openid: OpenIdService
    hierarchy: HierarchyService
    cluster: Cluster

    @property
    def server_name(self) -> str:
        return self.config.server_name


async def build_services(config: Config, db: Database, signing_key: Any) -> Services:
    server_name = config.server_name
    users = UserStore(db)
    devices = DeviceStore(db)
    events = EventStore(db)
    state = StateStore(db)
    rooms = RoomStore(db)
    registration = RegistrationStore(db)
    account_data_store = AccountDataStore(db)
    notifier = Notifier()
    # Stream positions from PostgreSQL sequences, shared with any other process (services/cluster.py).
    streams = {name: await StreamIdGenerator.from_sequence(db, name, sequence) for name, sequence in SEQUENCES.items()}
    for stream in streams.values():
        notifier.watch(stream)
    event_stream = streams["events"]
    account_data_stream = streams["account_data"]
    room_changes = StreamChangeCache(event_stream.current())
    to_device_store = ToDeviceStore(db)
    to_device_stream = streams["to_device"]
    device_list_stream = streams["device_lists"]
    receipt_stream = streams["receipts"]
    presence_stream = streams["presence"]
    presence = PresenceService(config.presence.enabled, PresenceStore(db), presence_stream, notifier,
                               server_name)

    def on_persisted(event: Event, users_to_wake: set[str]) -> None:
        notifier.notify_at(event_stream, event.internal["stream_ordering"], users_to_wake)
        if event.type == "m.room.member" and event.state_key and event.membership != "join":
            typing.user_left(event.room_id, event.state_key)

    refresh_store = RefreshTokenStore(db)
    tokens = TokenAuthenticator(devices, refresh_store)
    token_lifetime_ms = config.access_token_lifetime * 1000 if config.access_token_lifetime is not None else None
    accounts = AccountService(server_name, users, devices, PasswordHasher(config.password_hash_rounds), tokens,
                              access_token_lifetime_ms=token_lifetime_ms,
                              password_policy=config.password_config)
    pipeline = EventPipeline(
        server_name, signing_key, db, events, state, rooms, event_stream, room_changes, on_persisted,
        low_positions=OutlierPositions(db, OUTLIER_SEQUENCE),
    )
    relation_store = RelationStore(db)
    views = EventViews(events, state, Aggregator(events, relation_store))
    e2e_keys = E2eKeyService(server_name, E2eKeyStore(db), state, device_list_stream, notifier)
    to_device = ToDeviceService(server_name, to_device_store, to_device_stream, notifier)
    accounts.device_deletion_listeners.append(e2e_keys.devices_deleted)
    push_rules = PushRulesService(db, PushRuleStore(db), account_data_store, account_data_stream, notifier)
    membership = MembershipService(server_name, pipeline, events, state, rooms, users)
    ignored_users = IgnoredUsers(account_data_store)
    notifications = NotificationCounter(
        events, state, push_rules, PushActionStore(db), ignored_users,
        known_member_count=lambda room_id: len(m) if (m := pipeline.cached_joined_members(room_id)) is not None else None)
    room_events = RoomEventsService(
        pipeline, events, state, rooms, views, membership, event_stream,
        relation_checks=RelationChecks(events, relation_store), ignored_users=ignored_users,
    )
    profiles = ProfileService(users, state, events, pipeline, server_name)
    account_data = AccountDataService(account_data_store, account_data_stream, notifier, ignored_users)
    receipts = ReceiptsService(ReceiptStore(db), receipt_stream, events, state, rooms, account_data, notifier)
    typing = TypingService(state, notifier, streams["typing"], members=pipeline.joined_members)
    cluster = Cluster(db, instance_id_of(db), streams)
    deactivation = DeactivationService(users, accounts, membership, profiles, state, rooms)
    erasure = ErasureService.wired(server_name, db, users, pipeline, events, state, deactivation)
    wire_cluster(cluster, notifier=notifier, pipeline=pipeline, event_stream=event_stream,
                 room_changes=room_changes, events=events, typing=typing, tokens=tokens, presence=presence,
                 account_data_caches=(push_rules, ignored_users), erasure=erasure)
    limits = config.rate_limits
    retention = RetentionJob(config.retention, RetentionStore(db), events, leader_gate=cluster)
    retention.on_purged = pipeline.tell_purged  # the other processes drop them too
    return Services(
        config=config,
        db=db,
        signing_key=signing_key,
        users=users,
        devices=devices,
        events=events,
        state=state,
        rooms=rooms,
        filters=FilterStore(db),
        media=MediaStore(db),
        registration=registration,
        notifier=notifier,
        tokens=tokens,
        accounts=accounts,
        uia=UserInteractiveAuth(registration, accounts),
        refresh_tokens=RefreshService(refresh_store, users, tokens, token_lifetime_ms),
        login_tokens=LoginTokenService(LoginTokenStore(db), users),
        user_admin=UserAdminService(server_name, users, devices, tokens),
        pipeline=pipeline,
        membership=membership,
        room_creator=RoomCreator(server_name, pipeline, rooms, membership),
        room_events=room_events,
        views=views,
        sync=(sync := SyncService(
            events, state, rooms, account_data_store, views, notifier, event_stream,
            account_data_stream, room_changes, receipts=receipts, typing=typing,
            e2e_keys=e2e_keys, to_device=to_device,
            push_rules=push_rules, presence=presence, ignored_users=ignored_users,
            notifications=notifications,
        )),
        notifications=notifications,
        sliding_sync=SlidingSyncService.beside(sync, db),
        account_data=account_data,
        receipts=receipts,
        typing=typing,
        user_directory=UserDirectoryStore(db),
        profiles=profiles,
        deactivation=deactivation,
        login_limiter=RateLimiter(limits.login.per_second, limits.login.burst),
        registration_limiter=RateLimiter(limits.registration.per_second, limits.registration.burst),
        push_rules=push_rules,
        pushers=PushersService(PusherStore(db)),
        room_directory=RoomDirectoryService(rooms, state, events),
        e2e_keys=e2e_keys,
        to_device=to_device,
        key_backup=KeyBackupService(KeyBackupStore(db)),
        turn=TurnService(config.turn),
        presence=presence,
        relations=RelationsService(events, relation_store, views, room_events, event_stream),
        room_upgrader=RoomUpgrader(pipeline, events, state, rooms, membership),
        room_summary=RoomSummaryService(membership, rooms, events, state, EventGraphStore(db, state)),
        notification_list=NotificationList(
            NotificationListStore(db),
            notifications, events, state, views, event_stream,
        ),
        search=SearchService(SearchStore(db), events, state, views, event_stream, ignored_users),
        erasure=erasure,
        retention=retention,
        room_aliases=RoomAliasService(server_name, rooms, state),
        sync_filters=FilterService(FilterStore(db)),
        user_search=UserDirectoryService(UserDirectoryStore(db), config.user_directory.search_all_users),
        reports=ReportService(server_name, ReportStore(db), events, state, rooms, users, views),
        openid=OpenIdService(OpenIdStore(db), server_name),
        hierarchy=HierarchyService(server_name, HierarchyStore(db), state, events),
        cluster=cluster,
    )
