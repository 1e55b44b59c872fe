"""ddval.valuation"""
