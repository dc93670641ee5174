from spotmatch.cli import main

raise SystemExit(main())
