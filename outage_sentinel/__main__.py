from outage_sentinel.cli import main

raise SystemExit(main())
