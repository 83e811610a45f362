from mfa_gateway.cli import main

raise SystemExit(main())
