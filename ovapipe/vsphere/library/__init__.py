"""Content Library distribution: one upload into a library, templates deployed from its item.

rest.py is the pinned REST session, content.py the typed calls, upload.py the item upload
through an update session (streamed from the OVA), publish.py the ``publish --library`` run.
"""
