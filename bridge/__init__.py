"""The SFU: endpoints, packet forwarding, RTCP, audio levels (the browser-meetings issue)."""
