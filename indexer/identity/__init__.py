"""One person across systems: who a Cairn user is in each identity realm, and which groups those
accounts belong to.

- `store.IdentityStore`: identity links (a Cairn user, by OIDC `sub`, → one account per realm: GitLab
  user id, Atlassian user key or accountId), set by an admin or found by verified email at sync time; and
  the memberships each source's permissions pass reads (replaced per source, so a removal at the source
  stops granting access after one pass).
- `people.People`: the people the IdP signed in (table `users`), found by subject, username or verified
  email.
- `resolver.IdentityResolver`: a person's Principal when a request arrives (deactivation read every
  time; links and memberships cached for a few seconds).

Namespaced principal strings themselves are vocabulary (indexer/models.py: parse_principal,
realm_principal): connectors write them on ACLs; this room maps a person onto them.
"""
