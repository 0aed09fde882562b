"""citygrid.stream"""
