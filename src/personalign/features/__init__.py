"""personalign.features"""
