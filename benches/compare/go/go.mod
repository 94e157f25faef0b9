module gocompare

go 1.19
