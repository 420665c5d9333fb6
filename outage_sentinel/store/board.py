"""What the board keeps: users, sessions, the audit trail, and the change marker its live view
watches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from outage_sentinel.store.kv import KvStore
from outage_sentinel.store.schema import (
    audit_t,
    board_sessions_t,
    field_answers_t,
    incident_log_t,
    incidents_t,
    kv_t,
    outbox_t,
    silences_t,
    users_t,
)


class BoardStore(KvStore):
    """The ``users``, ``board_sessions`` and ``audit`` tables."""

    # -- users ----------------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password_hash: str, now: datetime,
                 must_change: bool = False) -> bool:
        """False if the name is taken."""
        with self.transaction() as conn:
            if conn.execute(select(users_t.c.name).where(users_t.c.name == name)).first():
                return False
            conn.execute(users_t.insert().values(
                name=name, role=role, password_hash=password_hash, disabled=False,
                must_change=must_change, created_at=now, updated_at=now))
        return True

    def user(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users_t).where(users_t.c.name == name)).first()
            return dict(row._mapping) if row else None

    def users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(users_t).order_by(
                users_t.c.name))]

    def update_user(self, name: str, now: datetime, **values: Any) -> bool:
        """Set ``password_hash``, ``role``, ``disabled`` or ``must_change``; False if unknown.
        Disabling or a new password ends the user's sessions."""
        with self.transaction() as conn:
            n = conn.execute(update(users_t).where(users_t.c.name == name)
                             .values(updated_at=now, **values)).rowcount
            if n and ("password_hash" in values or values.get("disabled")):
                conn.execute(delete(board_sessions_t)
                             .where(board_sessions_t.c.user_name == name))
        return bool(n)

    # -- sessions -------------------------------------------------------------------------------

    def add_session(self, token_hash: str, user: str, csrf: str, now: datetime,
                    expires: datetime) -> None:
        with self.transaction() as conn:
            conn.execute(delete(board_sessions_t).where(board_sessions_t.c.expires_at < now))
            conn.execute(board_sessions_t.insert().values(
                token_hash=token_hash, user_name=user, csrf=csrf, created_at=now,
                expires_at=expires))

    def session(self, token_hash: str, now: datetime) -> dict[str, Any] | None:
        """The live session and its (enabled) user's name and role, or None."""
        q = (select(board_sessions_t.c.user_name, board_sessions_t.c.csrf,
                    board_sessions_t.c.expires_at, users_t.c.role, users_t.c.must_change)
             .join(users_t, users_t.c.name == board_sessions_t.c.user_name)
             .where(board_sessions_t.c.token_hash == token_hash,
                    board_sessions_t.c.expires_at > now, users_t.c.disabled.is_(False)))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
            return dict(row._mapping) if row else None

    def end_session(self, token_hash: str) -> None:
        with self.transaction() as conn:
            conn.execute(delete(board_sessions_t)
                         .where(board_sessions_t.c.token_hash == token_hash))

    # -- audit ----------------------------------------------------------------------------------

    def audit(self, now: datetime, actor: str, kind: str, *, ok: bool, action: str = "",
              target: str = "", remote: str = "", detail: str = "") -> None:
        with self.transaction() as conn:
            conn.execute(audit_t.insert().values(
                at=now, actor=actor[:100], kind=kind, action=action[:60], target=target[:200],
                remote=remote[:100], ok=ok, detail=detail))

    def failed_sign_ins(self, actor: str, since: datetime) -> list[datetime]:
        """Times of failed sign-ins for ``actor`` since ``since``, after its last success."""
        with self.engine.connect() as conn:
            last_ok = conn.execute(select(func.max(audit_t.c.at)).where(
                audit_t.c.actor == actor, audit_t.c.kind == "sign_in")).scalar()
            start = max(since, last_ok) if last_ok is not None else since
            return [r[0] for r in conn.execute(
                select(audit_t.c.at).where(audit_t.c.actor == actor,
                                           audit_t.c.kind == "sign_in_failed",
                                           audit_t.c.at > start).order_by(audit_t.c.at))]

    def audit_trail(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(audit_t).order_by(audit_t.c.id.desc()).limit(limit))]

    # -- field answers --------------------------------------------------------------------------

    def record_answer(self, token_hash: str, area: str, incident_id: str, village: str,
                      answer: str, note: str, now: datetime) -> int | None:
        """Keep the latest answer of one link for one area; its new revision, or None when it
        says what it said before (nothing to report)."""
        key = (field_answers_t.c.token_hash == token_hash) & (field_answers_t.c.area == area)
        with self.transaction(fenced=False) as conn:
            row = conn.execute(select(field_answers_t).where(key).with_for_update()).first()
            if row is None:
                conn.execute(field_answers_t.insert().values(
                    token_hash=token_hash, area=area, incident_id=incident_id, village=village,
                    answer=answer, note=note, revision=1, at=now))
                return 1
            if row.answer == answer:
                if note and note != row.note:
                    conn.execute(update(field_answers_t).where(key).values(note=note, at=now))
                return None
            conn.execute(update(field_answers_t).where(key).values(
                answer=answer, note=note, revision=row.revision + 1, at=now))
            return int(row.revision) + 1

    def answer_counts(self) -> dict[str, dict[str, int]]:
        """Incident id -> how many areas its liaisons said are back / still off (latest)."""
        q = select(field_answers_t.c.incident_id, field_answers_t.c.answer, func.count()) \
            .group_by(field_answers_t.c.incident_id, field_answers_t.c.answer)
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for iid, answer, n in conn.execute(q):
                out.setdefault(str(iid), {})[str(answer)] = int(n)
        return out

    def answers(self, incident_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(field_answers_t).where(field_answers_t.c.incident_id == incident_id)
                .order_by(field_answers_t.c.at))]

    # -- the live view --------------------------------------------------------------------------

    def change_marker(self) -> str:
        """A value that changes whenever the daemon or an operator commits anything the board
        shows: incidents, their log, the outbox (a new message, one changing status: each
        status's count; an attempt made: their sum), the kv state (storm, source health),
        silences."""
        with self.engine.connect() as conn:
            parts = [
                conn.execute(select(func.max(incidents_t.c.updated_at))).scalar(),
                conn.execute(select(func.max(incident_log_t.c.id))).scalar(),
                conn.execute(select(func.max(outbox_t.c.id))).scalar(),
                # Every status's count, not only the sent one: a hold, a release, a withdrawal,
                # a retry or a dead letter changes no row count and sends nothing.
                sorted(tuple(r) for r in conn.execute(
                    select(outbox_t.c.status, func.count()).group_by(outbox_t.c.status))),
                # A failed attempt (pending again, one more attempt, a new error) moves no
                # status count: the attempts made and when the next is due do.
                conn.execute(select(func.sum(outbox_t.c.attempts),
                                    func.max(outbox_t.c.next_attempt_at))).first(),
                conn.execute(select(func.max(kv_t.c.updated_at), func.count())
                             .where(~kv_t.c.key.like("%cursor:%"))).first(),
                conn.execute(select(func.max(silences_t.c.id))).scalar(),
                conn.execute(select(func.max(field_answers_t.c.at))).scalar(),
                conn.execute(select(func.count()).select_from(silences_t)
                             .where(silences_t.c.expired_at.is_not(None))).scalar(),
            ]
        return "|".join(str(p) for p in parts)

    def kv_prefixed(self, prefix: str) -> dict[str, Any]:
        """Every kv value whose key starts with ``prefix`` (keyed by the rest of the key)."""
        stored = self.kv_key(prefix)
        with self.engine.connect() as conn:
            rows = conn.execute(select(kv_t.c.key, kv_t.c.value)
                                .where(kv_t.c.key.like(stored + "%")))
            return {str(k)[len(stored):]: v for k, v in rows}
