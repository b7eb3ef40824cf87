//! The live side of HAProxy: its process, master CLI and admin socket.
