from tcpwdist.cli import main

raise SystemExit(main())
