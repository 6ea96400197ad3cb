# doc/local.mk — rules for doc/
