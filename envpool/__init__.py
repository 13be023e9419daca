"""Browsers for web agents: a crash-proof pool of Chromium contexts (Ray actor), the WebRL
observation (simplified HTML with element ids) and action grammar, the navigation allowlist, and the
task suites (MiniWoB++, any URL)."""
