"""The command-centre board: a live web view of every outage, where staff see, decide and act.

``access.py`` signs people in (argon2 hashes, sessions, CSRF, the sign-in throttle),
``views.py`` turns the store's rows into what the pages show (pure), ``actions.py`` maps a
button to the same lifecycle step the operator verbs run, ``live.py`` tells connected pages
that something changed, and ``app.py`` is the Starlette application that joins them.
"""
