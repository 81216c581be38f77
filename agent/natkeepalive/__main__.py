from __future__ import annotations

from natkeepalive.cli.main import main

raise SystemExit(main())
