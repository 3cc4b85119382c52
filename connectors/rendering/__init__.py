"""Rich text of tickets and pages to plain Markdown-ish text: Jira ADF, Jira wiki markup, Confluence storage."""
from connectors.rendering.adf import adf_to_text
from connectors.rendering.jira_wiki import jira_wiki_to_text
from connectors.rendering.storage import storage_to_markdown

__all__ = ["adf_to_text", "jira_wiki_to_text", "storage_to_markdown"]
