from emulator.stack import main

raise SystemExit(main())
