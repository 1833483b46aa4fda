from hgs.cli import main

raise SystemExit(main())
