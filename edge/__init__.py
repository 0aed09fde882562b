"""citygrid.edge"""
