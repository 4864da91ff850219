"""KumoMTA's own documented request examples for POST /api/inject/v1,
verbatim, for tests/e2e/test_inject_compat.py.

Source: the KumoMTA repository (github.com/KumoCorp/kumomta, commit
3ebc1e8585e0e989cfcf50a93c94a803610249e8), licensed under the Apache
License 2.0; the texts below are copied unchanged from the files named
above each one.
"""

# docs/userguide/operation/httpinjection.md: the curl example's body
USERGUIDE_CURL = '{"envelope_sender": "noreply@example.com",\n "content": "Subject: hello\\n\\nHello there",\n "recipients": [{"email": "recipient@example.com"}]\n}'

# docs/reference/http/kumod/api_inject_v1_post.md: "a very basic example"
# (as published it has a trailing comma, which is not JSON)
BASIC = '{\n    "envelope_sender": "noreply@example.com",\n    "content": "Subject: hello\\n\\nHello there",\n    "recipients": [\n        {\n            "email": "recipient@example.com",\n        }\n    ]\n}'

# docs/reference/http/kumod/api_inject_v1_post.md: "A very basic example of
# using templating" (name and email are predefined substitutions)
TEMPLATING = '{\n    "envelope_sender": "noreply@example.com",\n    "content": "To: \\"{{ name }}\\" <{{ email }}>\\nSubject: hello\\n\\nHello {{ name }}!",\n    "recipients": [\n        {\n            "email": "recipient@example.com",\n            "name": "John Smith"\n        }\n    ]\n}'

# docs/reference/http/kumod/api_inject_v1_post.md: the request body's
# "Examples" (every field KumoMTA defines)
FULL_REQUEST = '{\n  "content": "From: user@example.com\\nSubject: Hello\\n\\nHello there",\n  "deferred_generation": false,\n  "deferred_spool": false,\n  "envelope_sender": "some.id@bounces.sender-example.com",\n  "recipients": [\n    {\n      "email": "john.smith@mailbox-example.com",\n      "metadata": {\n        "campaign_id": "promo-2026-q2",\n        "user_segment": "premium"\n      },\n      "name": "John Smith",\n      "substitutions": {\n        "age": 42,\n        "gender": "male"\n      }\n    }\n  ],\n  "substitutions": {\n    "campaign_title": "Fall Campaign"\n  },\n  "template_dialect": "Jinja",\n  "trace_headers": {\n    "header_name": "string",\n    "include_meta_names": [\n      "string"\n    ],\n    "received_header": false,\n    "supplemental_header": false\n  }\n}'

# docs/reference/http/kumod/schemas/Content.md: the builder content example
# (a content object only; the test wraps it in a request)
CONTENT_BUILDER = '{\n  "amp_html_body": "<!doctype html><html amp4email>...</html>",\n  "attachments": [\n    {\n      "base64": true,\n      "content_id": "my-image",\n      "content_type": "image/gif",\n      "data": "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7",\n      "file_name": "pixel.gif"\n    }\n  ],\n  "from": {\n    "email": "sales@sender-example.com",\n    "name": "Sales"\n  },\n  "headers": {\n    "X-Tenant": "MyTenant"\n  },\n  "html_body": "<p>This is the <b>HTML</b> part</p>",\n  "reply_to": {\n    "email": "sales@sender-example.com",\n    "name": "Sales"\n  },\n  "subject": "string",\n  "text_body": "This is the plain text part"\n}'
