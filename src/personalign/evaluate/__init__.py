"""personalign.evaluate"""
