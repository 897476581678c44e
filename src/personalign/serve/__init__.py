"""personalign.serve"""
