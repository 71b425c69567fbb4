"""Pure rules of the wallet: money, currencies, the transaction state machine, the ledger.

Nothing in this package performs I/O; the storage adapters and the HTTP layer build on it.
"""
