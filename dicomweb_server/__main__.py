from dicomweb_server.cli import main

raise SystemExit(main())
