"""Access control at sign-up (issue 9): judge new accounts against known campaigns and the
sign-ups around them, before they send a single request. See docs/signup.md."""
