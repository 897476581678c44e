"""personalign.audit"""
