from paintae.cli import main

raise SystemExit(main())
