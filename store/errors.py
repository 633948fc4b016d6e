"""Errors raised by the store: one-line messages meant for users."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class NotAStoreError(StoreError):
    """The path exists but does not hold a Flowmetal store (or is not a directory)."""


class StoreNotFoundError(StoreError):
    """`Store.open(..., create=False)` found no store at the path."""


class SchemaError(StoreError):
    """The store was written by a newer schema than this Flowmetal understands."""


class CorruptStoreError(StoreError):
    """The store's files are damaged (truncated, overwritten, inconsistent)."""


class StoreFullError(StoreError):
    """The store cannot grow: max map size reached or the disk is full.

    Nothing of the failed write is visible; everything acknowledged before stays readable.
    """


class StoreClosedError(StoreError):
    """The store was closed, or this handle was inherited across fork()."""


class ConflictError(StoreError):
    """A write contradicts what is stored (e.g. a flow id reused for another run)."""


class MessageIdReusedError(ConflictError):
    """An inbox message id was delivered before, with a different message."""


class NotFoundError(StoreError):
    """A write refers to a record that does not exist (e.g. state of an unknown flow)."""


class CheckpointError(StoreError):
    """A flow's checkpoint cannot be decoded or loaded. Always names the flow."""

    def __init__(self, flow_id: str, reason: str):
        self.flow_id = flow_id
        self.reason = reason
        super().__init__(f"checkpoint of flow {flow_id!r} cannot be loaded: {reason}")
