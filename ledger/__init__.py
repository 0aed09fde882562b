"""citygrid.ledger"""
