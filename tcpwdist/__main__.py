from tcpwdist.entry import main

raise SystemExit(main())
