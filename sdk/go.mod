module github.com/lkedge/lkedge/sdk

go 1.24
