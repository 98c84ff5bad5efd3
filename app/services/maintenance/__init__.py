"""Customer and case maintenance: associate, move, split, merge, archive, erase — audited and undoable.

Every function that changes more than one record locks rows in one order — customers by
ascending id, then cases by ascending id — so concurrent maintenance and ingest serialise
instead of deadlocking or leaving a contact on a tombstone.
"""
