"""The board's web application (Starlette): sign-in, the pages, their JSON, the live stream
and the actions. It reads and writes the daemon's database (SQLite in WAL mode or PostgreSQL),
so it is safe while the daemon runs, and several board processes may share one database.

Every request but ``/login``, ``/healthz`` and the static assets needs a session; every
state-changing request also needs the session's CSRF token (``X-CSRF-Token`` header, or the
``csrf`` form field for the sign-out form), and signing in the token the sign-in page set
(its form field and cookie); acting needs the operator or admin role. Every
sign-in, failed sign-in (a wrong current password in a password change is one, throttled
alike), refusal (a role that may not, a missing or wrong CSRF token) and action is written to
the audit table.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outage_sentinel.board import access, report_pages
from outage_sentinel.board.actions import (
    USER_ERRORS,
    Actions,
    BadValue,
    check_keys,
    http_status,
    refusal,
    request_fields,
)
from outage_sentinel.board.field import FieldDesk, FieldError
from outage_sentinel.board.geo import Layout, layout, map_payload
from outage_sentinel.board.live import ChangeWatcher
from outage_sentinel.board.photos import photo_path, photos_of, thumbnail
from outage_sentinel.board.replies import FieldReplies
from outage_sentinel.board.sms_uplink import answer as uplink_answer
from outage_sentinel.board.views import (
    CardCache,
    Held,
    OutboxQuery,
    QueryError,
    Viewer,
    field_answers,
    field_photos,
    incident_detail,
    local,
    notice_row,
    outbox_query,
    overview,
    quarantine_row,
    said_text,
)
from outage_sentinel.clock_offset import CLOCK_OFFSET_PREFIX
from outage_sentinel.config import BoardConfig
from outage_sentinel.crew import Commitments
from outage_sentinel.events import UNSTORABLE, unstorable_key
from outage_sentinel.incidents import Incident
from outage_sentinel.lifecycle import held_to_deadline
from outage_sentinel.logs import get_logger, redact
from outage_sentinel.store import Store
from outage_sentinel.store.events import storable_text
from outage_sentinel.topology import Topology
from outage_sentinel.triage import STORM_KEY, storm_declared

HERE = Path(__file__).parent
COOKIE = "sentinel_session"
LANGUAGE_COOKIE = "sentinel_language"
#: The sign-in form's token, also in this cookie (SameSite strict, so another site's page
#: posting the form to sign a browser in to an account of its choosing has no cookie).
LOGIN_COOKIE = "sentinel_login"
LANGUAGES = ("zh", "en")
HEALTH_PREFIX = "health:"


@dataclass
class Board:
    """What the application works with; built by :func:`outage_sentinel.board.serve.build`."""

    settings: BoardConfig
    store: Store
    topology: Callable[[], Topology]
    actions: Actions
    commitments: Commitments
    clock: Callable[[], datetime]
    tz: tzinfo
    language: str
    #: The liaisons' pages (signed links, no sign-in).
    field_desk: FieldDesk
    #: The map's layout and JSON, per topology object (see :func:`map_bytes`).
    layouts: dict[int, Layout] = field(default_factory=dict)
    map_cache: dict[tuple[int, str], bytes] = field(default_factory=dict)
    #: Overview cards of incidents that have not changed since they were last shown.
    cards: CardCache = field(default_factory=CardCache)
    #: The channels that send SMS templates (:func:`outage_sentinel.liaison.sms_channels`).
    sms_channels: frozenset[str] = frozenset({"sms"})
    #: The feeders of the region this board's daemon serves in a topology (``None``: the
    #: whole bundle), the scope of its reports' figures.
    feeders: Callable[[Topology], frozenset[str] | None] = lambda _topology: None


Handler = Callable[[Request, Board, dict[str, Any]], Awaitable[Response]]


def create_app(board: Board) -> Starlette:
    watcher = ChangeWatcher(board.store.change_marker)
    pages = Environment(loader=FileSystemLoader(HERE / "pages"),
                        autoescape=select_autoescape(["html"]))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await watcher.start()
        yield
        await watcher.stop()

    def signed_in(handler: Handler, *, act: bool = False, admin: bool = False
                  ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            refused = unstorable_params(request)
            if refused is not None:
                return refused
            checked = await check_request(board, request, act=act, admin=admin)
            if isinstance(checked, Response):
                return checked
            return await handler(request, board, checked)
        return endpoint

    def public(handler: Callable[[Request, Board, Environment], Awaitable[Response]]
               ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            refused = unstorable_params(request)
            return refused if refused is not None else await handler(request, board, pages)
        return endpoint

    def page(name: str, **extra: Any) -> Handler:
        """A signed-in page rendered from ``pages/<name>.html``."""
        async def endpoint(request: Request, board: Board, session: dict[str, Any]
                           ) -> Response:
            if name == "index" and session.get("must_change"):
                return RedirectResponse("/password", status_code=303)
            return HTMLResponse(pages.get_template(f"{name}.html").render(
                language=language_of(board, request), user=session["user_name"],
                role=session["role"], csrf=session["csrf"],
                error=request.query_params.get("error", ""), **extra))
        return endpoint

    async def events(request: Request, board: Board, session: dict[str, Any]) -> Response:
        return StreamingResponse(watcher.stream(request.is_disconnected),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    routes = route_table(signed_in, public, page, events)
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(SecurityHeaders, tile_url=board.settings.tile_url)])

    return app


def unstorable_params(request: Request) -> Response | None:
    """A 400 naming the parameter when a path or query parameter holds a character the
    database cannot store (NUL or a lone surrogate: it would reach a query or the audit
    trail), else None."""
    params = [*request.path_params.items(), *request.query_params.multi_items()]
    for name, value in params:
        key = unstorable_key({name: value})
        if key is not None:
            return JSONResponse({"error": f"{key}: {UNSTORABLE}"}, status_code=400)
    return None


class SecurityHeaders:
    """Headers on every response: no framing, no sniffing, no referrer off the site, and a
    content policy that lets the page load only its own scripts, styles and data (plus the
    intranet tile server's images when one is configured). The report view keeps its inline
    styles."""

    def __init__(self, app: ASGIApp, tile_url: str | None = None) -> None:
        self.app = app
        tiles = ""
        if tile_url:
            parts = urlparse(tile_url)
            tiles = f" {parts.scheme}://{parts.netloc}"
        self.policy = ("default-src 'self'; script-src 'self'; connect-src 'self'; "
                       f"img-src 'self' data:{tiles}; frame-ancestors 'none'; "
                       "base-uri 'none'; form-action 'self'")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        inline = scope.get("path", "").startswith("/reports/view")
        policy = self.policy + ("; style-src 'self' 'unsafe-inline'" if inline
                                else "; style-src 'self'")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = policy
                headers["X-Frame-Options"] = "DENY"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
            await send(message)

        await self.app(scope, receive, with_headers)


Wrap = Callable[..., Callable[[Request], Awaitable[Response]]]


def route_table(signed_in: Wrap, public: Wrap, page: Callable[..., Handler], events: Handler
                ) -> list[Route | Mount]:
    """Every route of the board: pages and their JSON (signed in), the field's pages (a
    signed link), the hooks (their own secrets), the static assets."""
    return [
        *_session_routes(signed_in, public, page),
        *_board_routes(signed_in, page, events),
        *_link_routes(public),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]


def _session_routes(signed_in: Wrap, public: Wrap, page: Callable[..., Handler]) -> list[Route]:
    """The front page, signing in and out, the password, the language, health."""
    return [
        Route("/", signed_in(page("index"))),
        Route("/login", public(login_page), methods=["GET"]),
        Route("/login", public(login), methods=["POST"]),
        Route("/logout", public(logout), methods=["POST"]),
        Route("/password", signed_in(page("password")), methods=["GET"]),
        Route("/api/password", signed_in(change_password), methods=["POST"]),
        Route("/healthz", lambda _r: PlainTextResponse("ok")),
        Route("/language", choose_language),
        Route("/api/me", signed_in(me)),
    ]


def _board_routes(signed_in: Wrap, page: Callable[..., Handler], events: Handler
                  ) -> list[Route]:
    """The board's JSON, live stream and actions (acting needs the role), and the reports."""
    return [
        Route("/api/overview", signed_in(overview_json)),
        Route("/api/map", signed_in(map_json)),
        Route("/api/events", signed_in(events)),
        Route("/api/incidents/{incident_id}", signed_in(incident_json)),
        Route("/api/incidents/{incident_id}/photos/{name}", signed_in(incident_photo),
              methods=["GET"]),
        Route("/api/incidents", signed_in(global_action("open"), act=True),
              methods=["POST"]),
        Route("/api/incidents/{incident_id}/{action}", signed_in(incident_action, act=True),
              methods=["POST"]),
        Route("/api/storm", signed_in(global_action("storm"), act=True), methods=["POST"]),
        Route("/api/outbox", signed_in(outbox_json)),
        *(Route(f"/api/outbox/{what}", signed_in(global_action(what), act=True),
                methods=["POST"]) for what in ("retry", "withdraw", "hold", "release")),
        # ``quarantine retry``: acting like the outbox's retry (the operator or admin role).
        Route("/api/quarantine/retry", signed_in(quarantine_retry, act=True),
              methods=["POST"]),
        Route("/api/silences", signed_in(silences_json)),
        Route("/api/silences", signed_in(global_action("silence"), act=True),
              methods=["POST"]),
        Route("/api/audit", signed_in(audit_json, admin=True)),
        Route("/reports", signed_in(page("reports"))),
        Route("/reports/view", signed_in(report_view)),
    ]


def _link_routes(public: Wrap) -> list[Route]:
    """No sign-in: the field's pages (a signed link) and the hooks (their own secrets)."""
    return [
        Route("/f/{token}", public(field_html("field.html", lambda d: d.liaison_page)),
              methods=["GET"]),
        Route("/f/{token}/answer", public(field_json(FieldDesk.answer)), methods=["POST"]),
        Route("/f/{token}/photo", public(field_json(FieldDesk.liaison_photo, raw=True)),
              methods=["POST"]),
        Route("/c/{token}", public(field_html("crew.html", lambda d: d.crew_page)),
              methods=["GET"]),
        Route("/c/{token}/step", public(field_json(FieldDesk.crew_step)), methods=["POST"]),
        Route("/c/{token}/photo", public(field_json(FieldDesk.crew_photo, raw=True)),
              methods=["POST"]),
        Route("/p/{token}", public(field_html("progress.html", lambda d: d.public_page)),
              methods=["GET"]),
        Route("/hooks/sms/{token}", public(sms_hook), methods=["POST"]),
        Route("/hooks/sms/{token}/{provider}", public(sms_hook), methods=["POST"]),
        Route("/hooks/dingtalk", public(dingtalk_hook), methods=["POST"]),
        Route("/hooks/feishu", public(feishu_hook), methods=["POST"]),
        Route("/p/{token}/{name}", public(progress_photo), methods=["GET"]),
    ]


# -- the field's pages (a signed link, no sign-in) ---------------------------------------------


PageView = Callable[[FieldDesk], Callable[[str, str], dict[str, Any]]]
FieldCall = Callable[[FieldDesk, str, str, Any], dict[str, Any]]


def field_html(template: str, view: PageView) -> Callable[[Request, Board, Environment],
                                                        Awaitable[Response]]:
    """A field page (``/f``, ``/c``, ``/p``): its view from the token, or why not."""
    async def page(request: Request, board: Board, pages: Environment) -> Response:
        token = request.path_params["token"]
        try:
            shown = await run_in_threadpool(view(board.field_desk), token, _remote(request))
        except FieldError as exc:
            return HTMLResponse(pages.get_template(template).render(
                language="zh", error=str(exc), view=None, token=""), status_code=exc.status)
        return HTMLResponse(pages.get_template(template).render(
            language="zh", error="", view=shown, token=token))
    return page


def field_json(call: FieldCall, raw: bool = False) -> Callable[[Request, Board, Environment],
                                                              Awaitable[Response]]:
    """A field action (an answer, a crew's step, a photo): the JSON body (or the raw bytes as
    ``data`` with the query's parameters) to ``call``; its result, or the refusal."""
    async def action(request: Request, board: Board, _pages: Environment) -> Response:
        body: Any = {**request.query_params, "data": await request.body()} if raw \
            else await _json(request)
        key = None if raw else unstorable_key(body)
        if key is not None:
            return JSONResponse({"error": f"{key}: {UNSTORABLE}"}, status_code=400)
        try:
            out = await run_in_threadpool(call, board.field_desk, request.path_params["token"],
                                          _remote(request), body)
        except FieldError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse(out)
    return action


async def sms_hook(request: Request, board: Board, _pages: Environment) -> Response:
    """An SMS provider's reply push (:mod:`outage_sentinel.board.sms_uplink`): Aliyun's at
    ``/hooks/sms/<token>``, Tencent's at ``/hooks/sms/<token>/tencent``; each is answered as
    its provider expects (Aliyun ``code`` 0, Tencent ``result`` 0), a refusal too."""
    provider = request.path_params.get("provider", "aliyun")
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return JSONResponse(uplink_answer(provider, error="the body must be JSON"),
                            status_code=400)
    try:
        counts = await run_in_threadpool(FieldReplies(board.field_desk).sms_replies,
                                         request.path_params["token"], body, provider,
                                         board.sms_channels)
    except FieldError as exc:
        return JSONResponse(uplink_answer(provider, error=str(exc)), status_code=exc.status)
    return JSONResponse(uplink_answer(provider, counts))


async def dingtalk_hook(request: Request, board: Board, _pages: Environment) -> Response:
    """A DingTalk outgoing robot's callback; the robot answers in the group."""
    try:
        body = json.loads(await request.body() or b"{}")
        said = await run_in_threadpool(FieldReplies(board.field_desk).dingtalk,
                                       request.headers.get("timestamp", ""),
                                       request.headers.get("sign", ""), body)
    except FieldError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    except ValueError:
        return JSONResponse({"error": "the body must be JSON"}, status_code=400)
    if said is None:
        return JSONResponse({})
    return JSONResponse({"msgtype": "text", "text": {"content": said}})


async def feishu_hook(request: Request, board: Board, _pages: Environment) -> Response:
    """Feishu's event callback (and its URL verification)."""
    raw = await request.body()
    try:
        out = await run_in_threadpool(FieldReplies(board.field_desk).feishu,
                                      {k.lower(): v for k, v in request.headers.items()}, raw)
    except FieldError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    return JSONResponse(out)


async def progress_photo(request: Request, board: Board, _pages: Environment) -> Response:
    try:
        path = await run_in_threadpool(board.field_desk.photo, request.path_params["token"],
                                       _remote(request), request.path_params["name"])
    except FieldError as exc:
        return PlainTextResponse(str(exc), status_code=exc.status)
    return FileResponse(path, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=86400"})


# -- sign-in ------------------------------------------------------------------------------------


async def check_request(board: Board, request: Request, *, act: bool, admin: bool
                        ) -> dict[str, Any] | Response:
    """The request's session, or the response refusing it: no session (401, or the sign-in
    page for a page), a state change without the CSRF token (403, audited), a role that may
    not (403, audited)."""
    session = await run_in_threadpool(_session, board, request)
    if session is None:
        if request.url.path.startswith("/api/") or request.method != "GET":
            return JSONResponse({"error": "sign in first"}, status_code=401)
        return RedirectResponse("/login", status_code=303)
    if request.method != "GET" and not access.csrf_ok(
            session["csrf"], request.headers.get("x-csrf-token")):
        return await csrf_refused(board, request, session["user_name"])
    if session.get("must_change") and request.url.path not in ("/", "/password",
                                                                "/api/password", "/api/me"):
        return JSONResponse({"error": "choose a new password first (/password)"},
                            status_code=403)
    if (act and session["role"] not in access.MAY_ACT) or (admin and session["role"] != "admin"):
        await run_in_threadpool(board.store.audit, board.clock(), session["user_name"],
                                "denied", ok=False, action=request.url.path,
                                remote=_remote(request))
        return JSONResponse({"error": f"role {session['role']} may not do this"},
                            status_code=403)
    session["language"] = language_of(board, request)
    return session


async def csrf_refused(board: Board, request: Request, user: str) -> Response:
    """403 for a signed-in user's state change without the session's CSRF token (another
    site's page posting with the user's cookie, or a stale page), audited like a role's
    refusal (``denied``, detail ``csrf``)."""
    await run_in_threadpool(board.store.audit, board.clock(), user, "denied", ok=False,
                            action=request.url.path, remote=_remote(request), detail="csrf")
    return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)


def language_of(board: Board, request: Request) -> str:
    """The page language: the browser's choice (``/language?to=en``), else the config's."""
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    return chosen if chosen in LANGUAGES else board.language


async def choose_language(request: Request) -> Response:
    """Switch the board's language for this browser (a cookie; nothing is stored)."""
    to = request.query_params.get("to", "")
    # Back to the page the switch was on: only its path, never another site.
    path = urlparse(request.headers.get("referer") or "/").path or "/"
    response = RedirectResponse(path if path.startswith("/") and not path.startswith("//")
                                else "/", status_code=303)
    if to in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, to, max_age=365 * 86400, samesite="strict",
                            path="/")
    return response


async def login_page(request: Request, board: Board, pages: Environment) -> Response:
    return login_form(request, board, pages, request.query_params.get("error", ""))


def login_form(request: Request, board: Board, pages: Environment, error: str,
               status: int = 200, field: str = "") -> Response:
    """The sign-in page, with a new form token (also in its cookie) and ``error`` shown."""
    token = access.new_session().csrf
    response = HTMLResponse(pages.get_template("login.html").render(
        language=language_of(board, request), error=error, field=field, csrf=token),
        status_code=status)
    response.set_cookie(LOGIN_COOKIE, token, max_age=12 * 3600, httponly=True,
                        samesite="strict", secure=board.settings.secure_cookies, path="/login")
    return response


async def login(request: Request, board: Board, pages: Environment) -> Response:
    form = await request.form()
    if not access.csrf_ok(request.cookies.get(LOGIN_COOKIE) or "", str(form.get("csrf") or "")):
        # not posted from this board's own sign-in page (or the page is over 12 hours old)
        return RedirectResponse("/login?error=expired", status_code=303)
    name, password = str(form.get("user") or ""), str(form.get("password") or "")
    key = unstorable_key({"user": name, "password": password})
    if key is not None:  # refused before it reaches a query; audited as a failed sign-in
        await run_in_threadpool(board.store.audit, board.clock(),
                                storable_text(name.strip()[:100]) or "-",
                                "sign_in_failed", ok=False, remote=_remote(request),
                                detail=f"{key}: {UNSTORABLE}")
        return login_form(request, board, pages, "text", status=400, field=key)
    outcome = await run_in_threadpool(sign_in, board, name, password, _remote(request))
    if isinstance(outcome, float):
        wait = str(int(outcome) + 1)
        return RedirectResponse(f"/login?error=wait&seconds={wait}", status_code=303,
                                headers={"Retry-After": wait})
    if outcome is None:
        return RedirectResponse("/login?error=wrong", status_code=303)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    response.set_cookie(COOKIE, outcome, max_age=int(board.settings.session_hours * 3600),
                        httponly=True, samesite="strict", secure=board.settings.secure_cookies,
                        path="/")
    return response


async def logout(request: Request, board: Board, _pages: Environment) -> Response:
    token = request.cookies.get(COOKIE)
    session = await run_in_threadpool(_session, board, request)
    form = await request.form()
    if session is None:
        return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
    if not access.csrf_ok(session["csrf"], str(form.get("csrf") or "")):
        return await csrf_refused(board, request, session["user_name"])
    if token:
        await run_in_threadpool(board.store.end_session, access.token_hash(token))
        await run_in_threadpool(board.store.audit, board.clock(), session["user_name"],
                                "sign_out", ok=True, remote=_remote(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _remote(request: Request) -> str:
    return request.client.host if request.client else ""


def _session(board: Board, request: Request) -> dict[str, Any] | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    return board.store.session(access.token_hash(token), board.clock())


def throttled(board: Board, name: str, now: datetime, remote: str, action: str = "") -> float:
    """The seconds ``name``'s next password check must still wait (0: none), after too many
    wrong passwords (:func:`access.sign_in_wait`); a throttled attempt is audited, not
    counted, so the wait announced (Retry-After) stays true."""
    wait = access.sign_in_wait(board.store.failed_sign_ins(name, now - access.FAILURE_WINDOW),
                               now, board.settings.max_failed_sign_ins)
    if wait > 0:
        board.store.audit(now, name or "-", "sign_in_throttled", ok=False, action=action,
                          remote=remote, detail=f"{wait:.0f} s to wait")
    return wait


def sign_in(board: Board, name: str, password: str, remote: str) -> str | float | None:
    """The new session's cookie token; the seconds to wait when throttled; None if refused."""
    now = board.clock()
    name = name.strip()[:100]
    wait = throttled(board, name, now, remote)
    if wait > 0:
        return wait
    user = board.store.user(name) if name else None
    if user is None or user["disabled"] or not access.password_matches(user["password_hash"],
                                                                       password):
        board.store.audit(now, name or "-", "sign_in_failed", ok=False, remote=remote,
                          detail="unknown user" if user is None else
                          "disabled" if user["disabled"] else "wrong password")
        return None
    session = access.new_session()
    board.store.add_session(session.token_hash, name, session.csrf, now,
                            now + timedelta(hours=board.settings.session_hours))
    board.store.audit(now, name, "sign_in", ok=True, remote=remote)
    return session.token


async def change_password(request: Request, board: Board, session: dict[str, Any]) -> Response:
    body = await _json(request)
    key = unstorable_key(body)
    if key is not None:
        return JSONResponse({"error": f"{key}: {UNSTORABLE}"}, status_code=400)
    name = session["user_name"]
    checked = await run_in_threadpool(current_password, board, name,
                                      str(body.get("current") or ""), _remote(request))
    if checked is not True:
        if checked is False:
            return JSONResponse({"error": "the current password is wrong"}, status_code=400)
        wait = str(int(checked) + 1)
        return JSONResponse({"error": f"too many wrong passwords: try again in {wait} s"},
                            status_code=429, headers={"Retry-After": wait})
    try:
        hashed = access.hash_password(str(body.get("new") or ""))
    except access.AccessError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    await run_in_threadpool(board.store.update_user, name, board.clock(),
                            password_hash=hashed, must_change=False)
    await run_in_threadpool(board.store.audit, board.clock(), name, "action", ok=True,
                            action="password", remote=_remote(request))
    return JSONResponse({"ok": True, "message": "password changed: sign in again"})


def current_password(board: Board, name: str, password: str, remote: str) -> bool | float:
    """Whether ``password`` is ``name``'s, checked as a sign-in is: throttled alike (the
    seconds to wait), and a wrong one audited as a failed sign-in (``action`` password),
    counted with them, so a session's holder guesses no faster than the sign-in page lets."""
    now = board.clock()
    wait = throttled(board, name, now, remote, action="password")
    if wait > 0:
        return wait
    user = board.store.user(name)
    if user is not None and access.password_matches(user["password_hash"], password):
        return True
    board.store.audit(now, name, "sign_in_failed", ok=False, action="password", remote=remote,
                      detail="wrong current password (password change)")
    return False


# -- reading ------------------------------------------------------------------------------------


def _viewer(board: Board, session: dict[str, Any]) -> Viewer:
    return Viewer(session.get("language") or board.language, board.tz,
                  session["role"] in access.MAY_SEE_PHONES,
                  links=session["role"] in access.MAY_ACT, sms=board.sms_channels)


async def me(request: Request, board: Board, session: dict[str, Any]) -> Response:
    return JSONResponse({"user": session["user_name"], "role": session["role"],
                         "csrf": session["csrf"], "language": language_of(board, request),
                         "may_act": session["role"] in access.MAY_ACT})


def held_deadlines(board: Board, rows: Sequence[Mapping[str, Any]], now: datetime
                   ) -> dict[str, Held]:
    """The arrival deadline each incident's crew is held to, and its area type, by incident
    id: the daemon's own (:meth:`CrewDispatch.deadline_in`: the dispatch's recorded deadline
    once a crew holds it, else counted from when the outage was known or went off again),
    so the countdown turns red when the daemon escalates, not before. An incident no crew
    is held to (:func:`~outage_sentinel.lifecycle.held_to_deadline`: planned work, a false
    alarm, an outage over) has none."""
    dispatcher = board.actions.core.lifecycle.dispatcher
    out: dict[str, Held] = {}
    with board.store.reading() as conn:  # no write lock: the daemon's writers go on
        for row in rows:
            inc = Incident.from_json(row["state"])
            if not held_to_deadline(inc.kind, str(row.get("stage") or inc.stage)):
                continue
            deadline, area, _travel = dispatcher.deadline_in(conn, inc, dict(row), now)
            out[str(row["id"])] = (deadline, area)
    return out


def overview_data(board: Board, viewer: Viewer) -> dict[str, Any]:
    now, topology = board.clock(), board.topology()
    heads = board.store.incident_heads()
    cards = board.cards.cards(heads, board.store.incident_states, topology, now, viewer,
                              board.commitments,
                              deadlines=lambda rows: held_deadlines(board, rows, now))
    horizon = (now + timedelta(days=2)).isoformat()
    storm = board.store.kv_get(STORM_KEY)
    data = overview([c for c in cards if c["kind"] == "fault"],
                    [c for c in cards if c["kind"] != "fault" and (c["start"] or "") < horizon],
                    now, storm=storm if storm_declared(storm, now) else None,
                    health=board.store.kv_prefixed(HEALTH_PREFIX),
                    outbox=board.store.outbox_counts(), viewer=viewer,
                    clock_offsets=board.store.kv_prefixed(CLOCK_OFFSET_PREFIX))
    data["silences"] = [silence_row(s, board.tz) for s in board.store.silences(holding_at=now)]
    # Over but not closed out (the cause and the devices found are still to be recorded).
    data["to_close"] = [{"id": r["id"], "kind": r["kind"], "status": r["status"],
                         "feeder_name": topology.feeder_names.get(r["feeder"], r["feeder"]),
                         "end_local": local(r["end_time"], viewer.tz)}
                        for r in board.store.awaiting_closeout(now - timedelta(days=7))]
    # ... and how many in all: the list shows the latest of a week, never silently all.
    data["to_close_total"] = board.store.awaiting_closeout_count()
    # Records the sources sent that could not be taken in: kept, and shown, never dropped.
    # A processing failure's stored event may be put back (``quarantine retry``).
    data["quarantine"] = {"total": board.store.count("quarantine"), "latest": [
        quarantine_row(q, viewer) for q in board.store.quarantined(10)]}
    said = board.store.answer_counts()
    for card in data["incidents"]:  # what the field said, and the crew's photos
        card["field_back"] = said.get(card["id"], {}).get("back", 0)
        card["field_dark"] = said.get(card["id"], {}).get("dark", 0)
        card["photos"] = len(photos_of(board.field_desk.photos, card["id"]))
    return data


def silence_row(s: Any, tz: tzinfo) -> dict[str, Any]:
    return {"id": s.id, "matcher": s.matcher, "value": s.value,
            "ends_at": s.ends_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"), "reason": redact(s.reason),
            "actor": s.actor, "force": s.force}


async def overview_json(request: Request, board: Board, session: dict[str, Any]) -> Response:
    data = await run_in_threadpool(overview_data, board, _viewer(board, session))
    return JSONResponse(data)


def incident_data(board: Board, incident_id: str, viewer: Viewer) -> dict[str, Any] | None:
    row = board.store.get_incident(incident_id)
    if row is None:
        return None
    log = board.store.incident_log(incident_id)
    notices = board.store.messages(incident_id=incident_id)
    # What a digest standing for some of them said, as its own row after theirs.
    digests = {int(d) for m in notices if (d := (m.payload or {}).get("digest")) is not None}
    now = board.clock()
    detail = incident_detail(row, log,
                             notices + (board.store.messages(ids=digests) if digests else []),
                             board.store.events(incident_id=incident_id, limit=500),
                             board.topology(), now, viewer, board.commitments,
                             held_deadlines(board, [row], now).get(str(row["id"])))
    detail["answers"] = field_answers(board.store.answers(incident_id), board.topology(),
                                      viewer)
    detail["photos"] = field_photos(log, incident_id, board.topology(), viewer)
    return detail


async def incident_photo(request: Request, board: Board, session: dict[str, Any]) -> Response:
    """A photo of the incident (``?size=thumb``: its thumbnail), for signed-in staff."""
    iid, name = request.path_params["incident_id"], request.path_params["name"]
    find = thumbnail if request.query_params.get("size") == "thumb" else photo_path
    path = await run_in_threadpool(find, board.field_desk.photos, iid, name)
    if path is None:
        return PlainTextResponse("no such photo", status_code=404)
    return FileResponse(path, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=86400"})


async def incident_json(request: Request, board: Board, session: dict[str, Any]) -> Response:
    iid = request.path_params["incident_id"]
    data = await run_in_threadpool(incident_data, board, iid, _viewer(board, session))
    if data is None:
        return JSONResponse({"error": f"no incident {iid!r}"}, status_code=404)
    return JSONResponse(data)


def map_bytes(board: Board, feeders: str | None) -> bytes:
    """The map's JSON, cached per topology (a reload brings a new one) and feeder selection."""
    topology = board.topology()
    key = (id(topology), feeders or "")
    cached = board.map_cache.get(key)
    if cached is None:
        lay = board.layouts.get(id(topology))
        if lay is None:
            board.layouts.clear()
            board.map_cache.clear()
            lay = board.layouts[id(topology)] = layout(topology)
        wanted = [f for f in feeders.split(",") if f] if feeders is not None else None
        cached = json.dumps(map_payload(topology, board.settings.tile_url, wanted, lay),
                            ensure_ascii=False, separators=(",", ":")).encode()
        if len(board.map_cache) > 256:
            board.map_cache.clear()
        board.map_cache[key] = cached
    return cached


async def map_json(request: Request, board: Board, session: dict[str, Any]) -> Response:
    body = await run_in_threadpool(map_bytes, board, request.query_params.get("feeders"))
    return Response(body, media_type="application/json",
                    headers={"Cache-Control": "private, max-age=60"})


async def outbox_json(request: Request, board: Board, session: dict[str, Any]) -> Response:
    """Messages newest first, a page at a time (``before``: the previous page's
    ``next_before``), filtered by ``status`` (comma-separated), ``purpose``, ``incident``."""
    try:
        query = outbox_query(request.query_params)
    except QueryError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    data = await run_in_threadpool(outbox_data, board, query, _viewer(board, session))
    return JSONResponse(data)


def outbox_data(board: Board, query: OutboxQuery, viewer: Viewer) -> dict[str, Any]:
    rows = board.store.outbox_page(statuses=query.statuses, purpose=query.purpose,
                                   incident_id=query.incident, before=query.before,
                                   limit=query.limit + 1)
    shown = rows[:query.limit]
    return {"messages": [{**notice_row(m, viewer),
                          "error": said_text(redact(m.last_error or ""), viewer)}
                         for m in shown],
            "next_before": shown[-1].id if len(rows) > query.limit else None}


async def silences_json(request: Request, board: Board, session: dict[str, Any]) -> Response:
    now = board.clock()
    rows = await run_in_threadpool(board.store.silences, holding_at=now)
    return JSONResponse([silence_row(s, board.tz) for s in rows])


async def audit_json(request: Request, board: Board, session: dict[str, Any]) -> Response:
    rows = await run_in_threadpool(board.store.audit_trail, 200)
    return JSONResponse([{**r, "at": r["at"].isoformat()} for r in rows])


async def report_view(request: Request, board: Board, session: dict[str, Any]) -> Response:
    try:
        wanted = report_pages.parse(dict(request.query_params))
        topology = board.topology()
        body, media, name = await run_in_threadpool(
            report_pages.render, wanted, board.store, topology, board.clock(), board.tz,
            language_of(board, request), board.feeders(topology))
    except (report_pages.ReportRequestError, ValueError) as exc:
        return RedirectResponse(f"/reports?{urlencode({'error': str(exc)})}", status_code=303)
    disposition = "inline" if wanted.fmt == "html" else "attachment"
    return Response(body, media_type=media,
                    headers={"Content-Disposition": f"{disposition}; filename=\"{name}\""})


# -- acting -------------------------------------------------------------------------------------


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return {"__invalid__": True}
    return body if isinstance(body, dict) else {"__invalid__": True}


def _act(board: Board, session: dict[str, Any], what: str, target: str, remote: str,
         asked: dict[str, Any], step: Callable[[str], str]) -> tuple[int, dict[str, Any]]:
    """Run one action as the signed-in user and audit it, whatever the outcome, with what
    was asked (``asked``: the request's essential fields): 200, 400 (a value it cannot use),
    404 (it names nothing there is), 409 (the state refuses it), 500."""
    actor = f"board:{session['user_name']}"
    now = board.clock()

    def audit(ok: bool, outcome: str) -> None:
        board.store.audit(now, session["user_name"], "action", ok=ok, action=what,
                          target=target, remote=remote, detail=audit_detail(outcome, asked))

    try:
        result = step(actor)
    except USER_ERRORS as exc:
        said = refusal(exc)  # the request's fields named, not the CLI's options
        audit(False, redact(said))
        return http_status(exc), {"error": said}
    except Exception as exc:
        get_logger(component="board").error("action_failed", action=what, target=target,
                                             error=redact(repr(exc)))
        audit(False, redact(repr(exc)))
        return 500, {"error": "the action failed; see the board's log"}
    audit(True, result)
    return 200, {"ok": True, "result": result}


def audit_detail(outcome: str, asked: dict[str, Any]) -> str:
    """An audit entry's detail: the outcome, then the request's fields as JSON (numbers
    masked, see :func:`~outage_sentinel.board.actions.request_fields`), as text the
    database can hold (a NUL or a lone surrogate asked for is shown escaped)."""
    if not asked:
        return storable_text(outcome)
    return storable_text(
        f"{outcome} · request {json.dumps(asked, ensure_ascii=False, sort_keys=True)}")


async def _respond(request: Request, board: Board, session: dict[str, Any], what: str,
                   target: str, step: Callable[[str, dict[str, Any]], str]) -> Response:
    body = await _json(request)

    def run(actor: str) -> str:
        if body.get("__invalid__"):  # refused like any other bad value, and audited
            raise BadValue("the body must be a JSON object")
        key = unstorable_key(body)
        if key is not None:  # before anything is written, and audited
            raise BadValue(f"{key}: {UNSTORABLE}")
        check_keys(what, body)  # a key the action does not take is no key to ignore
        return step(actor, body)

    status, data = await run_in_threadpool(_act, board, session, what, target,
                                           _remote(request), request_fields(what, body), run)
    return JSONResponse(data, status_code=status)


async def incident_action(request: Request, board: Board, session: dict[str, Any]) -> Response:
    iid, action = request.path_params["incident_id"], request.path_params["action"]
    return await _respond(request, board, session, action, iid,
                          lambda actor, body: board.actions.incident_step(iid, action, body,
                                                                          actor))


#: Actions not on one incident, by the name the audit trail records.
GLOBAL_ACTIONS: dict[str, Callable[[Actions, dict[str, Any], str], str]] = {
    "open": Actions.open_incident, "storm": Actions.storm, "retry": Actions.retry,
    "withdraw": Actions.withdraw, "hold": Actions.hold, "release": Actions.release,
    "silence": Actions.silence}


def global_action(what: str) -> Handler:
    """The endpoint of one of :data:`GLOBAL_ACTIONS`."""
    step = GLOBAL_ACTIONS[what]

    async def endpoint(request: Request, board: Board, session: dict[str, Any]) -> Response:
        return await _respond(request, board, session, what, "",
                              lambda actor, body: step(board.actions, body, actor))
    return endpoint


async def quarantine_retry(request: Request, board: Board, session: dict[str, Any]
                           ) -> Response:
    """``quarantine retry ID…`` from the board: audited as the CLI's entry is (the action
    ``quarantine retry``, the ids as target and request), its kind the board's."""
    ids = (await _json(request)).get("ids")
    target = ",".join(map(str, ids[:50]))[:300] if isinstance(ids, list) else ""
    return await _respond(request, board, session, "quarantine retry", storable_text(target),
                          lambda actor, body: board.actions.quarantine_retry(body, actor))
