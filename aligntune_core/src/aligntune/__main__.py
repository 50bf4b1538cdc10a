from aligntune.cli import main

raise SystemExit(main())
