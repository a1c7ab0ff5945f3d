"""The bottom layer: the portable filter grammar and the principal/ACL vocabulary.

Everything above (stores, ingestion, users, retrieval, services) imports from here; nothing
here imports from them.
"""
