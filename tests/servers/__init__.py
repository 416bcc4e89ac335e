"""Real servers for the tests: started from their binaries or in-process, on loopback
ports in temporary folders, so a test can kill, freeze and restart them."""
