from partcrafter_server.cli import main

raise SystemExit(main())
