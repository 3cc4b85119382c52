"""Connectors: crawl sources (git, GitLab, Jira, Confluence) into Documents, incrementally."""
