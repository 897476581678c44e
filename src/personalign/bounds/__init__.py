"""personalign.bounds"""
