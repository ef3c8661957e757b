"""
Generated request ids: random, unique, in a UUID's text form.
"""

from __future__ import annotations

import uuid

from twisted.trial.unittest import SynchronousTestCase

from twisted_lambdagw.server.forwarding import RandomIds


class RandomIdsTests(SynchronousTestCase):
    """
    Ids are version 4 UUIDs as text, and never repeat.
    """

    def test_uuid4_text(self) -> None:
        """
        Each id reads back as a version 4, RFC 4122 UUID, written as uuid prints it.
        """
        ids = RandomIds()
        for _ in range(1000):
            text = ids()
            parsed = uuid.UUID(text)
            self.assertEqual((parsed.version, parsed.variant), (4, uuid.RFC_4122))
            self.assertEqual(str(parsed), text)

    def test_unique_across_batches(self) -> None:
        """
        Ids do not repeat, within and across the random batches, nor between generators.
        """
        first, second = RandomIds(), RandomIds()
        made = [first() for _ in range(3 * RandomIds._BATCH)] + [second() for _ in range(300)]
        self.assertEqual(len(set(made)), len(made))

    def test_forget_starts_afresh(self) -> None:
        """
        After a fork (the hook forgets the batch), ids come from new randomness.
        """
        ids = RandomIds()
        before = [ids() for _ in range(5)]
        ids._forget()
        self.assertNotIn(ids(), before)
